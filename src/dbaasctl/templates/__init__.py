"""Sandboxed rendering of DatabaseClass templates (procedure inputs and Secret values).

Templates are written by DBAs but run inside the operator, next to DSN passwords, so every template
is checked statically when compiled (`checks`), runs in an immutable sandbox (`sandbox`) whose every
allocating operation is bounded (`limits`), and is rendered off the event loop with a deadline, at
most once per reconcile pass (`offloop`). Go-style references of the reference operator keep working
(`go_style`).
"""

from dbaasctl.templates.context import CONTEXT_NAMES, TemplateContext
from dbaasctl.templates.errors import (
    TemplateError,
    TemplateRenderError,
    TemplateSecurityError,
    TemplateSyntaxError,
    TemplateUndefinedError,
)
from dbaasctl.templates.go_style import translate_go_style
from dbaasctl.templates.rendering import (
    MAX_RENDERED_LENGTH,
    MAX_TEMPLATE_LENGTH,
    render_inputs,
    render_secret,
    render_template,
    template_references,
    validate_template,
)

__all__ = [
    "CONTEXT_NAMES",
    "MAX_RENDERED_LENGTH",
    "MAX_TEMPLATE_LENGTH",
    "TemplateContext",
    "TemplateError",
    "TemplateRenderError",
    "TemplateSecurityError",
    "TemplateSyntaxError",
    "TemplateUndefinedError",
    "render_inputs",
    "render_secret",
    "render_template",
    "template_references",
    "translate_go_style",
    "validate_template",
]
