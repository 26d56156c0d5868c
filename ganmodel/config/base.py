"""The base of every params section model, and the checks the sections share: unknown keys are
errors, a boolean is no number, and a name must be one of a choices tuple."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False,
                              protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        # Lax mode reads `true` as 1 for int/float fields (`epochs: yes` would mean one epoch).
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if isinstance(value, bool) and field is not None and field.annotation is not bool:
                    expected = _type_name(field.annotation)
                    raise ValueError(f"{key}: expected {expected}, got a boolean ({value})")
        return data


def _one_of(value: str, known: Any, what: str) -> str:
    """`value` if it names one of `known` (a choices tuple), else the error the key's message carries."""
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(known)}")
    return value


def _some_of(values: tuple[str, ...], known: Any, what: str) -> tuple[str, ...]:
    """`values` if each names one of `known`, once."""
    for v in values:
        if v not in known:
            raise ValueError(f"unknown {what} {v!r}; expected some of {sorted(known)}")
    if len(set(values)) != len(values):
        raise ValueError(f"lists a {what} twice")
    return values


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")

