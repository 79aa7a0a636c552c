"""Operators written with other frameworks, doing the same job, measured by the same bench."""
