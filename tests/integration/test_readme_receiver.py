"""The receiver the README shows ("Receiving events") gets a real delivery, verifies it and refuses
a forged one: the example is run as written, not copied."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import httpx

from tests.integration.test_subscriptions import (  # noqa: F401 (fixtures used by name)
    hooks,
    new_invoice,
    push_facade,
    subscribe,
)
from tests.integration.waiting import until
from tests.support.servers import serve

README = Path(__file__).parents[2] / "README.md"


def readme_receiver_source() -> str:
    section = README.read_text().split("## Receiving events", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


async def test_the_readme_receiver_verifies_a_real_delivery(
    hooks,  # noqa: F811
    monkeypatch,
    tmp_path,
):
    source = readme_receiver_source()
    assert len([line for line in source.splitlines() if line.strip()]) <= 16
    module_path = tmp_path / "readme_receiver.py"
    module_path.write_text(source)
    sub = await subscribe(hooks, "http://127.0.0.1:9/placeholder", eventTypes=["invoice.created"])
    monkeypatch.setenv("INVOICING_WEBHOOK_SECRET", sub["secret"])
    spec = importlib.util.spec_from_file_location("readme_receiver", module_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "readme_receiver", module)
    spec.loader.exec_module(module)

    with serve(module.app, ready_path="/docs") as url:
        moved = await hooks.patch(
            f"/v1/subscriptions/{sub['id']}",
            headers={"Idempotency-Key": f"readme-{sub['id']}"},
            json={"url": f"{url}/invoicing-events"},
        )
        assert moved.status_code == 200, moved.text
        await new_invoice(hooks)
        await until(lambda: module.seen, what="the README receiver accepting a delivery")
        assert next(iter(module.seen)).startswith("evt_")
        forged = httpx.post(
            f"{url}/invoicing-events",
            content=b'{"type": "invoice.paid"}',
            headers={
                "webhook-id": "evt_1",
                "webhook-timestamp": "1",
                "webhook-signature": "v1,AA==",
            },
        )
        assert forged.status_code == 400
