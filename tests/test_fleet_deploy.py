"""deploy/: the nginx template renders to a config nginx accepts; Envoy and Kubernetes files parse
and route on the same header with the standard health checks."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_nginx_template_is_the_installed_one():
    from collab.fleet import nginx

    assert (DEPLOY / "nginx.conf.template").read_text() == nginx.TEMPLATE.read_text()


def test_nginx_config_checks(tmp_path):
    from collab.fleet import nginx

    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    conf = nginx.write(tmp_path, "127.0.0.1:18999", ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"])
    text = conf.read_text()
    assert "{{" not in text
    assert "hash $collab_route consistent;" in text and "$http_x_collab_session" in text
    assert text.count("server 127.0.0.1:") == 3 and "grpc_pass grpc://collab_replicas;" in text
    nginx.check(conf)  # nginx -t
    conf.write_text(text.replace("grpc_pass", "grpc_passs"))
    with pytest.raises(RuntimeError, match="nginx -t failed"):
        nginx.check(conf)


def test_nginx_render_rejects_no_replicas(tmp_path):
    from collab.errors import InvalidArgument
    from collab.fleet import nginx

    with pytest.raises(InvalidArgument):
        nginx.render(tmp_path, "127.0.0.1:1", [])


def _yaml():
    return pytest.importorskip("yaml", reason="PyYAML is needed to parse the Envoy/Kubernetes files")


def test_envoy_ring_hash_on_session_header():
    yaml = _yaml()
    cfg = yaml.safe_load((DEPLOY / "envoy.yaml").read_text())
    (cluster,) = cfg["static_resources"]["clusters"]
    assert cluster["lb_policy"] == "RING_HASH"
    assert cluster["health_checks"][0]["grpc_health_check"]["service_name"] == ""
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["cluster"] == cluster["name"]
    assert route["hash_policy"][0]["header"]["header_name"] == "x-collab-session"


def test_kubernetes_manifests():
    yaml = _yaml()
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s.yaml").read_text()) if d]
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert ("Deployment", "collab-replicas") in kinds and ("Deployment", "collab-proxy") in kinds
    assert ("Service", "collab-replicas") in kinds and ("Service", "collab") in kinds
    rep = next(d for d in docs if d["metadata"]["name"] == "collab-replicas" and d["kind"] == "Deployment")
    c = rep["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["grpc"]["port"] == 50051
    assert "--drain-timeout" in c["args"] and "--metrics-port" in c["args"]
    # the serve CLI accepts every flag the manifest passes
    import argparse

    from collab.transport import cli as serve_cli

    p = argparse.ArgumentParser()
    serve_cli.add_arguments(p, "serve")
    args = p.parse_args(c["args"][1:])
    assert args.drain_timeout == 60 and args.metrics_port == 9100
    headless = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "collab-replicas")
    assert headless["spec"]["clusterIP"] == "None"
    assert rep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 60
