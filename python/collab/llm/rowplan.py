"""Row policies of the split LLM's early prompt rows: the trained FC codec, and the automatic
choice among exact / SLICER / FC from a measured quality table (collab.planner.quality).

    collab llm demo --rows auto --max-loss 1.0 [--quality-table F] [--link-mbps 10 --rtt-ms 20]

The table says, per split point and policy, how many bytes an early row costs and how much
teacher-forced agreement with the full model it loses (measured on held-out prompts by
benchmarks/llm/mindfusion_quality.py --quality-table); the chooser takes the least expected
upload latency within the loss bound. Without a table the loss cannot be bounded and the
demo says so instead of guessing.
"""
from __future__ import annotations

from .._validate import check_float
from ..errors import InvalidArgument
from .protocol import RowPolicy

__all__ = ["fc_policy", "auto_policy", "policy_for", "question_rows", "QUALITY_TABLE", "DEFAULT_KEEP_LAST"]

QUALITY_TABLE = "smollm2-135m.quality.json"
DEFAULT_KEEP_LAST = 0.25


def fc_policy(head, at: int, ratio: int, keep_last, dtype: str = "int8", quiet: bool = False):
    """FcRowPolicy with the shipped FC codec for this split (checked against the head's model)."""
    from .artifact import ArtifactError
    from .fcnet import FcRowPolicy, find_artifact, load_net

    path = find_artifact("codec", at, ratio)
    if path is None:
        raise InvalidArgument(f"no trained FC codec for split {at}, ratio 1/{ratio} (models/llm, the installed "
                              "package or $COLLAB_LLM_NETS); train one with `collab llm train-codec`")
    try:
        codec = load_net(path, kind="codec", model=head, split_at=at)
    except ArtifactError as e:
        raise InvalidArgument(f"trained FC codec {path}: {e}") from None
    if not quiet:
        print(f"FC codec: {path} (1/{ratio} of the width, {dtype} codes)")
    return FcRowPolicy(codec, keep_last=DEFAULT_KEEP_LAST if keep_last is None else keep_last, dtype=dtype)


def policy_for(entry, *, head, at: int, keep_last):
    """The runnable row policy of a quality-table entry (policies: exact, slicer, fc)."""
    cfg = entry.config
    if entry.policy == "exact":
        return RowPolicy.exact()
    if entry.policy == "slicer":
        return RowPolicy(keep_last=keep_last, sparsity=float(cfg["sparsity"]), qbits=(int(cfg["qbits"]),))
    if entry.policy == "fc":
        return fc_policy(head, at, int(cfg["ratio"]), keep_last, dtype=str(cfg.get("dtype", "int8")), quiet=True)
    raise InvalidArgument(f"the quality table names a row policy this runtime does not have: {entry.policy!r}")


def question_rows(head, question: str, context: str = "") -> tuple[int, int]:
    """(prompt rows, first question row) of the user message context + question as the device
    sends it (chat template applied when the model has one). The quality table was measured on
    the rows before the question (benchmarks/llm/mindfusion_quality.py: context rows, the question
    exact), so that is the span a measured policy may compress. head: the head GGUF or its
    loaded runtime.Model."""
    from .runtime import Model

    m = head if isinstance(head, Model) else Model(head)
    user = context + question
    try:
        text = m.chat_prompt(user)
    except InvalidArgument:
        text = user
    toks = m.tokenize(text)
    at = text.rfind(user)
    if at < 0:   # a template that rewrites the message: the question cannot be located, compress nothing
        return len(toks), min(1, len(toks))
    before = m.tokenize(text[:at + len(context)])
    q0 = 0
    while q0 < min(len(before), len(toks)) and before[q0] == toks[q0]:
        q0 += 1
    return len(toks), q0


def _early_rows(head, prompt: str, keep_last, context: str = "") -> tuple[int, int, int]:
    """(early rows, exact rows, keep_last as rows) of the prompt as the device will send it.
    Without an explicit keep_last the question rows stay exact: the early rows are row 1 up to
    the question (the system prompt and the context), as the table was measured."""
    n, q0 = question_rows(head, prompt, context)
    if keep_last is None:
        keep = n - q0
    else:
        keep = int(round(keep_last * n)) if isinstance(keep_last, float) else int(keep_last)
    keep = min(max(keep, 0), n)
    early = max(0, n - keep - 1)  # row 0 (the attention sink) always travels exact
    return early, n - early, keep


def auto_policy(args, *, head, full, at: int):
    """Pick the early-row policy for args.prompt (see the module docstring); prints the choice."""
    from ..planner.quality import choose, load_quality_table
    from .artifact import model_digest
    from .fcnet import find_shipped
    from .runtime import Model

    if args.max_loss is None:
        raise InvalidArgument("--rows auto needs --max-loss PP (the quality loss you accept)")
    max_loss = check_float("--max-loss", args.max_loss, lo=0.0)
    mbps = check_float("--link-mbps", args.link_mbps, lo=0.0, lo_open=True)
    rtt = check_float("--rtt-ms", args.rtt_ms, lo=0.0)
    path = args.quality_table or find_shipped(QUALITY_TABLE)
    table = None
    if path is not None:
        table = load_quality_table(path, system="llm", model_sha256=model_digest(full).hex())
    m = Model(head)   # loaded once: the prompt's rows and the row width
    early, exact_rows, keep = _early_rows(m, args.prompt, args.keep_last, getattr(args, "context", None) or "")
    d = int(m.n_embd)
    c = choose(table, split=at, items=early, bandwidth_bps=mbps * 1e6, rtt_ms=rtt, max_loss=max_loss,
               latency_target_ms=args.latency_target_ms, fixed_bytes=exact_rows * d * 4.0,
               policies=("exact", "slicer", "fc"))
    unit = "pp" if table.fraction else table.metric["name"]
    print(f"row policy (--rows auto, {path}; {early} early rows before the question, last {keep} + row 0 exact, "
          f"{mbps:g} Mbit/s, RTT {rtt:g} ms, max loss {max_loss:g} {unit} of {table.metric['name']}):")
    print(c.describe(unit))
    return policy_for(c.entry, head=head, at=at, keep_last=keep)
