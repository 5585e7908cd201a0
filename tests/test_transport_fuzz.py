"""Fuzz the server's message decoding: random bytes as codec payloads, as whole protobuf
messages, and as session frames. The server must answer every one with a clear status and
keep serving."""
import pytest

grpc = pytest.importorskip("grpc", reason="grpcio not installed (pip install grpcio)")
hypothesis = pytest.importorskip("hypothesis", reason="hypothesis not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import collab  # noqa: E402
import collab.codec  # noqa: E402
import numpy as np  # noqa: E402
from collab.transport import InvalidRequest, Server  # noqa: E402
from collab.transport._proto import collab_pb2 as pb  # noqa: E402
from collab.transport.builtin import CodecStatsHandler, EchoHandler  # noqa: E402

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def srv():
    with Server([EchoHandler(), CodecStatsHandler(max_elements=1 << 20)], port=0, workers=2,
                max_message_bytes=1 << 20) as s:
        yield s


@pytest.fixture(scope="module")
def client(srv):
    with collab.Client(srv.address, timeout=20) as c:
        yield c


@pytest.fixture(scope="module")
def raw(srv):
    ch = grpc.insecure_channel(srv.address)
    yield ch.unary_unary("/collab.v1.Collab/Infer")
    ch.close()


def _valid_frame():
    rng = np.random.default_rng(0)
    return collab.codec.encode(rng.standard_normal((4, 16)).astype(np.float32), 0.5, blocks=(2, 2), qbits=(8, 4))


VALID = _valid_frame()


@FUZZ
@given(st.binary(max_size=2048))
def test_random_payload_into_codec_task(client, data):
    try:
        out, _, _ = client.infer("codec-stats", data)
    except InvalidRequest:
        return
    assert out.startswith(b"{")  # a frame that happened to be valid was decoded


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_codec_frames(client, edits):
    b = bytearray(VALID)
    for i, v in edits:
        b[i] = v
    try:
        client.infer("codec-stats", bytes(b))
    except InvalidRequest:
        pass


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_as_whole_message(raw, data):
    try:
        out = raw(data, timeout=20)
    except grpc.RpcError as e:
        # not a Frame, or a Frame naming no hosted task
        assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), e
        return
    # bytes that parse as a Frame for a hosted task: a well-formed answer
    f = pb.Frame()
    f.ParseFromString(out)


@FUZZ
@given(st.binary(max_size=512), st.text(max_size=20), st.dictionaries(st.text(max_size=8), st.text(max_size=8),
                                                                       max_size=4))
def test_random_session_messages(client, payload, kind, meta):
    if kind.startswith("collab."):
        kind = "x" + kind
    with client.session("codec-stats") as s:
        try:
            s.send(kind, payload, meta)
        except ValueError:  # refused on the client already (e.g. meta['split'] not an integer)
            return
        try:
            k, out, _ = s.recv(20)
            assert k == "stats"
        except InvalidRequest:
            pass


@FUZZ
@given(st.lists(st.binary(max_size=256), min_size=1, max_size=4))
def test_random_bytes_as_session_stream(srv, chunks):
    with grpc.insecure_channel(srv.address) as ch:
        call = ch.stream_stream("/collab.v1.Collab/Session")
        try:
            for out in call(iter(chunks), timeout=20):
                f = pb.Frame()
                f.ParseFromString(out)
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                                grpc.StatusCode.NOT_FOUND), e


def test_server_alive_after_fuzzing(client, srv):
    assert client.infer("echo", b"alive")[0] == b"alive"
    assert client.health()["status"] == "SERVING"
    assert srv.stats()["internal"] == 0  # no input made a task crash
