"""The problems the auth routes answer with; `code` is what clients switch on."""

from __future__ import annotations

from shared.errors import Conflict, Forbidden, ProblemError, TooManyRequests, Unauthorized


class EmailTaken(Conflict):
    code = "email_taken"
    title = "An account with this email already exists"


class InvalidCode(ProblemError):
    status = 422
    code = "invalid_code"
    title = "The verification code is not valid"


class CodeExpired(ProblemError):
    status = 422
    code = "code_expired"
    title = "The verification code has expired"


class TooManyAttempts(TooManyRequests):
    code = "too_many_attempts"
    title = "Too many failed attempts"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    title = "Email or password is incorrect"


class WrongCurrentPassword(Forbidden):
    """403, not 401: the caller is signed in; a 401 would tell clients to drop their tokens."""

    code = "invalid_credentials"
    title = "The current password is incorrect"


class EmailNotVerified(Forbidden):
    code = "email_not_verified"
    title = "The email address is not verified yet"


class InvalidToken(Unauthorized):
    code = "invalid_token"
    title = "The token is not valid"


class TokenExpired(Unauthorized):
    code = "token_expired"
    title = "The token has expired"


class TokenRevoked(Unauthorized):
    code = "token_revoked"
    title = "The session has been revoked"
