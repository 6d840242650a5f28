"""Issue 13, part 3 over real HTTP: admins manage Cybersource's merchant-defined field definitions
through the facade, and invoices show their values with the definitions' labels."""

from __future__ import annotations

import uuid

import httpx

from tests.integration.conftest import client_for, invoice_body, key


async def test_definitions_are_managed_and_label_invoice_values(
    facade_url: str, sim: httpx.AsyncClient
) -> None:
    index = 40 + uuid.uuid4().int % 50
    label = f"PO number {uuid.uuid4().hex[:6]}"
    async with (
        client_for(facade_url, "ops") as ops,
        client_for(facade_url, "billing") as billing,
    ):
        assert (await billing.get("/v1/merchant-defined-fields/Invoice")).status_code == 403
        definition = {"fieldType": "Text", "label": label, "merchantDefinedDataIndex": index}
        create_key = key()
        created = await ops.post(
            "/v1/merchant-defined-fields/Invoice", json=definition, headers=create_key
        )
        assert created.status_code == 201, created.text
        [mine] = [d for d in created.json() if d["label"] == label]
        field_id = mine["id"]
        replay = await ops.post(
            "/v1/merchant-defined-fields/Invoice", json=definition, headers=create_key
        )
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
        assert sum(d["label"] == label for d in replay.json()) == 1

        renamed = {**definition, "label": f"{label} (renamed)"}
        updated = await ops.put(
            f"/v1/merchant-defined-fields/Invoice/{field_id}", json=renamed, headers=key()
        )
        assert updated.status_code == 200, updated.text
        listed = (await ops.get("/v1/merchant-defined-fields/Invoice")).json()
        assert {d["id"]: d["label"] for d in listed}[field_id] == f"{label} (renamed)"

        body = invoice_body()
        body["merchantDefinedFieldValues"] = [{"definitionId": field_id, "value": "PO-8812"}]
        invoice = await billing.post("/v1/invoices", json=body, headers=key())
        assert invoice.status_code == 201, invoice.text
        answer = invoice.json()
        assert answer["merchantDefinedFieldValues"] == [
            {"definitionId": field_id, "value": "PO-8812"}
        ]
        [labelled] = answer["merchantDefinedFieldValuesWithDefinition"]
        assert (labelled["label"], labelled["value"]) == (f"{label} (renamed)", "PO-8812")

        # Cybersource's refusal of a definition names the field.
        select = {"fieldType": "Select", "label": "Size", "merchantDefinedDataIndex": index}
        refused = await ops.post("/v1/merchant-defined-fields/Invoice", json=select, headers=key())
        assert refused.status_code == 422, refused.text
        assert any(e["field"] == "possibleValues" for e in refused.json()["errors"])

        wrong_type = await ops.get("/v1/merchant-defined-fields/Invoices")
        assert wrong_type.status_code == 400, wrong_type.text
        no_key = await ops.post("/v1/merchant-defined-fields/Invoice", json=definition)
        assert no_key.status_code == 400 and no_key.json()["code"] == "idempotency_key_missing"

        deleted = await ops.delete(f"/v1/merchant-defined-fields/Invoice/{field_id}")
        assert deleted.status_code == 204, deleted.text
        listed = (await ops.get("/v1/merchant-defined-fields/Invoice")).json()
        assert field_id not in [d["id"] for d in listed]
        assert (
            await ops.delete(f"/v1/merchant-defined-fields/Invoice/{field_id}")
        ).status_code == 204
