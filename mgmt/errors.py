"""Typed errors inside the management server; the API maps each to CloudStack's error code once."""

from __future__ import annotations


class CumuloError(Exception):
    """Base of the errors the API knows how to report."""

    error_code = 530  # CloudStack: internal error
    cs_error_code = 4250


class InvalidParameter(CumuloError):
    error_code, cs_error_code = 431, 4350


class PermissionDenied(CumuloError):
    error_code, cs_error_code = 531, 4365


class InsufficientCapacity(CumuloError):
    error_code, cs_error_code = 533, 4250


class AgentUnavailable(CumuloError):
    """The host has no live agent connection here."""

    error_code, cs_error_code = 530, 4250


class OperationTimedOut(CumuloError):
    """The agent did not answer within the caller's deadline."""

    error_code, cs_error_code = 530, 4250


class ResourceInUse(CumuloError):
    """The resource is in use and cannot be removed or changed that way."""

    error_code, cs_error_code = 536, 4250
