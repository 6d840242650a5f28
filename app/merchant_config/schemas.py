"""Bodies of /v1/merchant-defined-fields: Cybersource's merchant-defined field definitions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Cybersource's reference types (the `{referenceType}` of its paths).
ReferenceType = Literal["Invoice", "Purchase", "Donation"]
Label = Annotated[str, StringConstraints(min_length=1, max_length=100)]


# The docstring is the OpenAPI description (openapi/openapi.json): a backslash-newline keeps its
# text unchanged where a line would be longer than 100 characters.
class MerchantDefinedFieldDefinition(BaseModel):
    """A definition to create, or to replace (Cybersource's MerchantDefinedFieldDefinitionRequest).

    `Text` fields take `textMinLength`/`textMaxLength`/`textDefaultValue`; `Select` fields take
    `possibleValues` (at least two, separated by commas) and must be customer-visible and not \
read-only.
    Cybersource checks the combinations (422 `upstream_rejected` naming the field)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    fieldType: Literal["Text", "Select", "text", "select"]
    label: Label
    merchantDefinedDataIndex: int = Field(ge=1, le=100, description="the field's position, 1..")
    customerVisible: bool | None = None
    readOnly: bool | None = None
    textMinLength: int | None = Field(default=None, ge=0, le=600)
    textMaxLength: int | None = Field(default=None, ge=1, le=600)
    textDefaultValue: str | None = Field(default=None, max_length=600)
    possibleValues: str | None = Field(default=None, max_length=600)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class MerchantDefinedFieldOut(BaseModel):
    """A definition as Cybersource answers it (unknown fields pass through)."""

    model_config = ConfigDict(extra="allow")

    id: int | None = None
    fieldType: str | None = None
    label: str | None = None
    customerVisible: bool | None = None
    readOnly: bool | None = None
    textMinLength: int | None = None
    textMaxLength: int | None = None
    textDefaultValue: str | None = None
    possibleValues: str | None = None
    merchantDefinedDataIndex: int | None = None
    referenceType: str | None = None
