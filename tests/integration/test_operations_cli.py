"""Operators list failed commands and re-drive them from the command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx

from tests.integration.conftest import client_for, invoice_body, key

REJECTION = {
    "status": "BADREQUEST",
    "reason": "VALIDATION_ERROR",
    "message": "Field validation errors.",
    "details": [{"field": "customerInformation.email", "reason": "Invalid email"}],
}


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "app", "operations", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_list_and_retry_failed_operations(
    facade_url: str, database_url: str, sim: httpx.AsyncClient
):
    await sim.post(
        "/__sim/faults",
        json={
            "action": "status",
            "method": "POST",
            "path": "/invoicing/v2/invoices",
            "status": 400,
            "body": REJECTION,
            "times": 1,
        },
    )
    async with client_for(facade_url) as api:
        rejected = await api.post("/v1/invoices", json=invoice_body(), headers=key())
        assert rejected.status_code == 422, rejected.text
        operation_id = rejected.json()["operationId"]

        listed = await asyncio.to_thread(_cli, database_url, "list", "--state", "failed")
        assert listed.returncode == 0, listed.stderr
        failed = [json.loads(line) for line in listed.stdout.splitlines()]
        assert operation_id in [o["id"] for o in failed]

        retried = await asyncio.to_thread(_cli, database_url, "retry", operation_id)
        assert retried.returncode == 0, retried.stderr
        assert json.loads(retried.stdout)["state"] == "pending"
        again = await asyncio.to_thread(_cli, database_url, "retry", operation_id)
        assert again.returncode == 1 and "Only an operation in state failed" in again.stderr

        for _ in range(100):  # the relay picks it up (NOTIFY) and the create now goes through
            state = (await api.get(f"/v1/operations/{operation_id}")).json()["state"]
            if state == "succeeded":
                break
            await asyncio.sleep(0.1)
        assert state == "succeeded"
