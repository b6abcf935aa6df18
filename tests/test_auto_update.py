"""Signed auto-update end to end, on Linux: real broker, real API, agents under the real
supervisor, versions installed side by side from a local HTTPS server with a test CA.

Version N agents update to N+1 (a staged rollout first, then everyone), a tampered artifact and
a bad signature are refused, a release that never comes online is rolled back by the
supervisor, and a pinned branch stays on N throughout. The "versions" are wheels of this
checkout that say another version (built in the test: a zip, no build backend).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from branch_agent._supervisor import InstallRoot
from branch_agent._update import rollout_bucket
from cloud_api.releases import public_key_b64, sign_artifact
from printermaster.stack import ChildProcess, Stack

from ._releases import HttpsServer, build_wheel, https_server
from ._wait import eventually
from .conftest import unique_id

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="side-by-side venvs: Linux test")

ONLINE_TIMEOUT_S = 10.0


class Fleet:
    def __init__(self, stack: Stack, tmp: Path, server: HttpsServer, key: str, channel: str):
        self.stack, self.tmp, self.server, self.key, self.channel = stack, tmp, server, key, channel
        self.processes: dict[tuple[str, str], ChildProcess] = {}

    def start(self, branch_id: str, agent_id: str, first: Path) -> None:
        creds = asyncio.run(self.stack.provision_agent(branch_id, agent_id))
        root = InstallRoot(self.tmp / f"root-{agent_id}")
        root.write_deps()
        root.install_wheel(first, "1.0.0")
        root.set_current("1.0.0")
        config = self.stack.agent_config(
            branch_id,
            agent_id,
            creds,
            ["POS-80C"],
            update={
                "channel": self.channel,
                "public_key": self.key,
                "base_url": self.server.url + "/",
                "ca_file": str(self.server.ca_file),
                "root": str(root.root),
                "online_timeout": ONLINE_TIMEOUT_S,
            },
        )
        path = self.tmp / f"{agent_id}.toml"
        path.write_bytes(tomli_w.dumps(config).encode())
        os.chmod(path, 0o600)
        argv = [sys.executable, "-m", "printermaster", "agent", "supervise"]
        process = ChildProcess(
            f"supervisor {agent_id}",
            [*argv, "--root", str(root.root), "--config", str(path)],
            self.tmp / f"{agent_id}.log",
        ).start()
        self.processes[(branch_id, agent_id)] = process

    def view(self, http: httpx.Client, branch_id: str, agent_id: str) -> dict[str, Any]:
        for agent in http.get(f"/v1/branches/{branch_id}/agents").json():
            if agent["agent_id"] == agent_id:
                return dict(agent)
        return {}

    def wait(
        self,
        http: httpx.Client,
        branch_id: str,
        agent_id: str,
        what: str,
        check: Callable[[dict[str, Any]], bool],
    ) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            view = self.view(http, branch_id, agent_id)
            return view if view and check(view) else None

        try:
            return dict(eventually(ready, timeout=45, interval=0.1, what=f"{agent_id}: {what}"))
        except AssertionError:
            process = self.processes.get((branch_id, agent_id))
            log = process.log_tail(40) if process else ""
            raise AssertionError(
                f"{agent_id}: {what}; last view {self.view(http, branch_id, agent_id)}\n{log}"
            ) from None

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


def _on(version: str, state: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def check(view: dict[str, Any]) -> bool:
        ok = view["online"] and view["version"] == version
        return bool(ok and (state is None or view["update"]["state"] == state))

    return check


def _agent_ids(branch_id: str) -> tuple[str, str]:
    """Two agent ids of ``branch_id``, the first in an earlier rollout bucket."""
    while True:
        first, second = unique_id("a"), unique_id("a")
        if rollout_bucket(branch_id, first) < rollout_bucket(branch_id, second):
            return first, second


@pytest.fixture
def fleet(stack: Stack, tmp_path: Path) -> Iterator[tuple[Fleet, Ed25519PrivateKey]]:
    key = Ed25519PrivateKey.generate()
    with https_server(tmp_path / "www", tmp_path / "tls") as server:
        running = Fleet(stack, tmp_path, server, public_key_b64(key), unique_id("ch"))
        try:
            yield running, key
        finally:
            running.stop()


def test_update_rollout_refusals_rollback_and_pin(
    stack: Stack, fleet: tuple[Fleet, Ed25519PrivateKey], tmp_path: Path
) -> None:
    fleet_, key = fleet
    www, build = fleet_.server.directory, tmp_path / "build"
    www.mkdir(exist_ok=True)
    channel = fleet_.channel
    wheels = {v: build_wheel(build, v) for v in ("1.0.0", "1.0.1", "1.0.2", "1.0.3")}
    wheels["1.0.4"] = build_wheel(build, "1.0.4", broken=True)
    manifests = {v: sign_artifact(key, w, channel=channel, version=v) for v, w in wheels.items()}
    for version in ("1.0.0", "1.0.1", "1.0.4"):
        shutil.copy(wheels[version], www)
    # 1.0.2: the server holds a different file than the one signed
    tampered = shutil.copy(wheels["1.0.2"], www)
    with zipfile.ZipFile(tampered, "a") as zf:
        zf.writestr("printermaster/_backdoor.py", "print('owned')\n")
    # 1.0.3: signed by someone else
    shutil.copy(wheels["1.0.3"], www)
    forged = sign_artifact(
        Ed25519PrivateKey.generate(), wheels["1.0.3"], channel=channel, version="1.0.3"
    )

    branch, pinned_branch = unique_id("bx"), unique_id("bp")
    early, late = _agent_ids(branch)
    pinned = unique_id("a")
    for b, a in ((branch, early), (branch, late), (pinned_branch, pinned)):
        fleet_.start(b, a, wheels["1.0.0"])
    # and one started by hand (`agent run` of this checkout), not by the supervisor, although
    # its install root is ready
    loose_root = InstallRoot(tmp_path / "root-loose")
    loose_root.write_deps()
    loose_root.install_wheel(wheels["1.0.0"], "1.0.0")
    loose_root.set_current("1.0.0")
    loose = stack.add_agent(
        unique_id("bl"),
        unique_id("a"),
        ["POS-80C"],
        update={
            "channel": channel,
            "public_key": fleet_.key,
            "base_url": fleet_.server.url,
            "ca_file": str(fleet_.server.ca_file),
            "root": str(loose_root.root),
        },
    )
    fleet_.processes[(loose.branch_id, loose.agent_id)] = loose.process  # stopped with the rest

    def publish(http: httpx.Client, manifest: Any, percent: int = 100) -> None:
        body = msgspec.structs.asdict(manifest)
        for field in ("v", "published_at"):
            body.pop(field)
        body["rollout_percent"] = percent
        response = http.post("/v1/releases", json=body)
        assert response.status_code == 201, response.text

    with stack.client(timeout=10) as http:
        for b, a in ((branch, early), (branch, late), (pinned_branch, pinned)):
            fleet_.wait(http, b, a, "online on 1.0.0", _on("1.0.0", "current"))
        publish(http, manifests["1.0.0"])
        pin = http.put(
            f"/v1/branches/{pinned_branch}/release-pin",
            json={"version": "1.0.0", "channel": channel},
        )
        assert pin.status_code == 200, pin.text
        fleet_.wait(http, pinned_branch, pinned, "pinned", _on("1.0.0", "pinned"))

        # N+1 to the first bucket(s) only: the early agent updates, the late one waits
        publish(http, manifests["1.0.1"], percent=rollout_bucket(branch, early) + 1)
        fleet_.wait(http, branch, early, "updated to 1.0.1", _on("1.0.1", "current"))
        fleet_.wait(http, branch, late, "not selected", _on("1.0.0", "not_selected"))
        widened = http.put(f"/v1/releases/{channel}/rollout", json={"rollout_percent": 100})
        assert widened.status_code == 200, widened.text
        fleet_.wait(http, branch, late, "updated to 1.0.1", _on("1.0.1", "current"))
        # an agent no supervisor runs refuses to switch (it would restart into itself for ever)
        stack.wait_agent(loose.branch_id, loose.agent_id)
        view = fleet_.wait(
            http,
            loose.branch_id,
            loose.agent_id,
            "refusing without a supervisor",
            lambda v: v["online"] and v["update"]["state"] == "refused",
        )
        assert "supervise" in view["update"]["error"]["message"]
        assert loose.process.running()

        # a tampered artifact and a forged signature are refused; nobody moves
        publish(http, manifests["1.0.2"])
        for agent in (early, late):
            view = fleet_.wait(http, branch, agent, "refusing 1.0.2", _on("1.0.1", "refused"))
            assert view["update"]["target"] == "1.0.2"
            assert view["update"]["error"]["code"] == "UPDATE_REFUSED"
            assert "SHA-256" in view["update"]["error"]["message"]
        publish(http, forged)
        for agent in (early, late):
            view = fleet_.wait(
                http,
                branch,
                agent,
                "refusing 1.0.3",
                lambda v: _on("1.0.1", "refused")(v) and v["update"]["target"] == "1.0.3",
            )
            assert "signature" in view["update"]["error"]["message"]

        # a release that never comes online is rolled back by the supervisor
        publish(http, manifests["1.0.4"])
        for agent in (early, late):
            view = fleet_.wait(
                http, branch, agent, "rolled back from 1.0.4", _on("1.0.1", "rolled_back")
            )
            assert view["update"]["target"] == "1.0.4"
            assert "did not come online" in view["update"]["error"]["message"]
            root = InstallRoot(tmp_path / f"root-{agent}")
            assert root.current() == "1.0.1" and "1.0.4" in root.rejected()

        # the pinned branch never left N
        view = fleet_.view(http, pinned_branch, pinned)
        assert view["online"] and view["version"] == "1.0.0"
        assert view["update"]["state"] == "pinned"
        assert InstallRoot(tmp_path / f"root-{pinned}").current() == "1.0.0"
        # the fleet view counts the agents per version
        summary = http.get("/v1/fleet", params={"limit": 1000}).json()
        by_branch = {b["branch_id"]: b for b in summary["branches"]}
        assert by_branch[branch]["versions"] == {"1.0.1": 2}
        assert by_branch[pinned_branch]["versions"] == {"1.0.0": 1}
        # the agents still print, on whatever version they run
        for b in (branch, pinned_branch):
            ok = http.post(f"/v1/branches/{b}/printers/POS-80C/test")
            assert ok.status_code == 200, ok.text
