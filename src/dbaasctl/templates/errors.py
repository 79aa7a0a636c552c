"""The errors a template can raise; their messages never contain result values."""

from __future__ import annotations

import json

__all__ = [
    "TemplateError",
    "TemplateRenderError",
    "TemplateSecurityError",
    "TemplateSyntaxError",
    "TemplateUndefinedError",
]


class TemplateError(Exception):
    """A template could not be compiled or rendered. The message never contains result values.

    `key` names the input or Secret key whose template failed, when known.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.detail = message
        self.key = key
        super().__init__(message)

    def for_key(self, kind: str, key: str) -> TemplateError:
        """The same error, prefixed with where it happened (`input "k8sName": ...`)."""
        err = type(self)(f"{kind} {json.dumps(key, ensure_ascii=False)}: {self.detail}", key=key)
        err.detail = self.detail
        return err


class TemplateSyntaxError(TemplateError):
    """The template text does not parse."""


class TemplateUndefinedError(TemplateError):
    """The template references a name or key the context does not have."""


class TemplateSecurityError(TemplateError):
    """The template tried something the sandbox forbids (attribute walking, globals, huge output)."""


class TemplateRenderError(TemplateError):
    """Any other failure while rendering (a filter given the wrong type, division by zero, ...)."""
