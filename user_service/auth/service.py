"""The rules of accounts and sign-in: sign-up, email codes, login throttling, token rotation."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import datetime, timedelta
from functools import partial

from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from shared.db import in_own_transaction, run_after_commit
from shared.errors import TooManyRequests
from shared.repository import is_duplicate_entry
from user_service.auth.errors import (
    CodeExpired,
    EmailNotVerified,
    EmailTaken,
    InvalidCode,
    InvalidCredentials,
    InvalidToken,
    TokenExpired,
    TokenRevoked,
    TooManyAttempts,
    WrongCurrentPassword,
)
from user_service.auth.limits import RequestLimiter
from user_service.auth.mail import Mailer
from user_service.auth.models import EmailVerification
from user_service.auth.passwords import PasswordHasher
from user_service.auth.repository import AuthRepository
from user_service.auth.revocation import publish_revoked_sessions
from user_service.auth.schemas import SignedUp, SignupRequest, TokenPair
from user_service.auth.throttle import Admission, LoginThrottle, client_network
from user_service.auth.tokens import TokenSigner
from user_service.roles.repository import RolesRepository
from user_service.settings import Settings
from user_service.users.errors import UserNotFound
from user_service.users.schemas import Account

logger = logging.getLogger("user_service.auth")

RESEND_KEY = "mail:resend:{email}"
# The sign-up answers its token in this header (the body is the account, as API.md lists it).
SIGNUP_TOKEN_HEADER = "Signup-Token"


def hash_code(user_id: int, code: str) -> str:
    # Salted with the user id, so equal codes of two users never share a hash.
    return hashlib.sha256(f"{user_id}:{code}".encode()).hexdigest()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


hash_refresh_token = hash_token


class AuthService:
    def __init__(
        self,
        *,
        session: AsyncSession,
        redis: Redis,
        settings: Settings,
        signer: TokenSigner,
        passwords: PasswordHasher,
        mailer: Mailer,
        throttle: LoginThrottle,
        limiter: RequestLimiter,
    ) -> None:
        self.session = session
        self.repository = AuthRepository(session)
        self.redis = redis
        self.settings = settings
        self.signer = signer
        self.passwords = passwords
        self.mailer = mailer
        self.throttle = throttle
        self.limiter = limiter

    # Sign-up and email verification

    async def signup(self, request: SignupRequest, *, client_ip: str) -> SignedUp:
        await self._within_limit(await self.limiter.signup(client_ip), "sign-ups")
        existing = await self.repository.get_user_by_email(request.email)
        if existing is not None and existing.email_verified:
            raise EmailTaken()
        password_hash = await self.passwords.hash(request.password)
        # An unverified account proves nothing (anyone can type an address): a new sign-up
        # replaces it, and the new code goes to the mailbox. If the old one's code was still
        # live, two parties claim the address, and the mailbox alone no longer tells them
        # apart: the new code then verifies only with the token this answer carries, or from
        # this sign-up's client network, which only whoever chose this password has (no
        # pre-hijack by either party).
        contested = await self.repository.delete_unverified_user(request.email)
        try:
            user = await self.repository.create_user(
                email=request.email,
                password_hash=password_hash,
                name=request.name,
                greeting=request.greeting,
                profile_image_url=request.profile_image_url,
            )
        except IntegrityError as error:
            # Two sign-ups for one address raced past the lookup; the unique index decided.
            if is_duplicate_entry(error):
                raise EmailTaken() from None
            raise
        signup_token = secrets.token_urlsafe(24)
        code = await self._issue_code(user.id, signup_token_hash=hash_token(signup_token),
                                      contested=contested, signup_network=client_network(client_ip))
        # Signing up again and again is no way to bomb a mailbox: a few sign-up mails per code
        # lifetime (the owner after a squatter, a typo fixed), then the code waits for a resend.
        mail = await self.limiter.signup_mail(
            user.email, window_seconds=self.settings.verification_code_ttl_seconds)
        if mail.allowed:
            # Claimed now, not once the mail is out: a resend while it is in flight sends nothing.
            await self.redis.set(RESEND_KEY.format(email=user.email), 1,
                                 ex=self.settings.resend_interval_seconds)
            # Past the hour's mails the code waits (a fresh one is mailed with its slot).
            if await self.limiter.mail_now(user.email):
                run_after_commit(self.session, partial(self._send_code, user.email, code))
        return SignedUp(account=Account.model_validate(user), signup_token=signup_token)

    async def resend_verification(self, email: str, *, client_ip: str) -> None:
        """Silent whatever happens: the caller must not learn whether the address has an account.
        (Counted whatever the address, so the limit reveals nothing either.)"""
        await self._within_limit(await self.limiter.resend(client_ip), "resends")
        # Claimed before the code is replaced, so concurrent resends send one mail, not several;
        # and for every address, so the Retry-After of a voided code (the time to the next
        # resend) is alike for addresses with and without an account.
        claimed = await self.redis.set(
            RESEND_KEY.format(email=email), 1, ex=self.settings.resend_interval_seconds, nx=True
        )
        if not claimed:
            return
        user = await self.repository.get_user_by_email(email)
        if user is None or user.email_verified:
            return
        if not await self.limiter.mail_now(user.email):
            return  # waits for a slot in the hour's mails; a fresh code is mailed then
        code = await self._issue_code(user.id)
        run_after_commit(self.session, partial(self._send_code, user.email, code))

    async def verify_email(self, email: str, code: str, *, client_ip: str,
                           signup_token: str | None = None) -> None:
        await self._within_limit(await self.limiter.verify(client_ip), "verification attempts")
        user = await self.repository.get_user_by_email(email)
        verification = None
        if user is not None and not user.email_verified:
            verification = await self.repository.get_verification(user.id)
        if user is None or verification is None:
            # An unknown address and a verified one answer as a wrong code does, the cap of
            # wrong codes included: nothing here tells whether an address has an account.
            await self._refuse_as_a_wrong_code(email)
            raise InvalidCode()
        if verification.failed_attempts >= self.settings.verification_max_attempts:
            raise TooManyAttempts(
                "Too many wrong codes: request a new one.",
                retry_after=self._until_resend,
            )
        if verification.expires_at <= utcnow():
            raise CodeExpired("The code has expired: request a new one.")
        # A day's cap per address, whatever the resends and new sign-ups: five a code would
        # otherwise be unbounded with a resend a minute.
        today = await self.limiter.code_attempt(email)
        if not today.allowed:
            raise TooManyAttempts("Too many wrong codes today for this address.",
                                  retry_after=today.retry_after)
        # Every attempt is counted before the code is compared, in one conditional UPDATE, so a
        # burst of parallel guesses cannot all slip in under the limit. It commits on its own:
        # a wrong code fails the request, and the rollback must not undo the count.
        user_id, code_hash = user.id, verification.code_hash
        max_attempts = self.settings.verification_max_attempts
        counted = await in_own_transaction(
            self.session,
            lambda own: AuthRepository(own).count_code_attempt(
                user_id, code_hash=code_hash, max_attempts=max_attempts),
        )
        if not counted:
            # Verified, replaced or used up since it was read: answer as the row is now.
            current = await self.repository.get_user(user_id, fresh=True)
            if current is None or current.email_verified:
                raise InvalidCode()
            raise TooManyAttempts(
                "Too many wrong codes: request a new one.",
                retry_after=self._until_resend,
            )
        right_code = hmac.compare_digest(code_hash, hash_code(user_id, code))
        if not (right_code and self._from_the_signup(verification, signup_token, client_ip)):
            raise InvalidCode()
        # Conditional on the code, so a double-submitted right code verifies once; the second
        # finds it spent, and answers as for any verified address.
        if not await self.repository.mark_email_verified(user, code_hash=code_hash):
            raise InvalidCode()

    @staticmethod
    def _from_the_signup(verification: EmailVerification, signup_token: str | None,
                         client_ip: str) -> bool:
        """The token, when sent, must be this sign-up's. Without it, a contested address is
        verified only from the sign-up's own client network. (A wrong token counts as a wrong
        code: it was counted above.)"""
        if signup_token is None:
            return (not verification.contested
                    or verification.signup_network == client_network(client_ip))
        expected = verification.signup_token_hash
        return expected is not None and hmac.compare_digest(expected, hash_token(signup_token))

    async def _refuse_as_a_wrong_code(self, email: str) -> None:
        """What a wrong code for a real pending account answers, for an address without one:
        the same 429 after as many wrong codes, with the same kind of Retry-After."""
        wrong = await self.limiter.wrong_code_without_account(
            email, max_attempts=self.settings.verification_max_attempts,
            window_seconds=self.settings.verification_code_ttl_seconds)
        if not wrong.allowed:
            raise TooManyAttempts("Too many wrong codes: request a new one.",
                                  retry_after=self._until_resend)
        today = await self.limiter.code_attempt(email)
        if not today.allowed:
            raise TooManyAttempts("Too many wrong codes today for this address.",
                                  retry_after=today.retry_after)

    @staticmethod
    async def _within_limit(admission: Admission, what: str) -> None:
        if not admission.allowed:
            raise TooManyRequests(f"Too many {what}; try again later.",
                                  retry_after=admission.retry_after)

    async def _issue_code(self, user_id: int, *, signup_token_hash: str | None = None,
                          contested: bool = False, signup_network: str | None = None) -> str:
        code = f"{secrets.randbelow(10**6):06d}"
        await self.repository.replace_verification_code(
            user_id=user_id,
            code_hash=hash_code(user_id, code),
            expires_at=utcnow() + timedelta(seconds=self.settings.verification_code_ttl_seconds),
            signup_token_hash=signup_token_hash, contested=contested,
            signup_network=signup_network,
        )
        return code

    async def mail_delayed_code(self, email: str) -> bool:
        """The mail guard gave `email` its slot: a fresh code for its pending account, mailed
        once this commits. False if the address has no pending account any more."""
        user = await self.repository.get_user_by_email(email)
        if user is None or user.email_verified:
            return False
        code = await self._issue_code(user.id)
        run_after_commit(self.session, partial(self._send_code, user.email, code))
        return True

    async def _send_code(self, email: str, code: str) -> None:
        try:
            await self.mailer.send_verification_code(
                to=email, code=code, ttl_seconds=self.settings.verification_code_ttl_seconds
            )
        except Exception:
            # The account is committed either way. Nothing reached the user: let the next
            # resend through at once.
            logger.warning("verification mail not sent", exc_info=True)
            await self.redis.delete(RESEND_KEY.format(email=email))

    @property
    def _until_resend(self) -> int:
        """Retry-After of a voided code: a whole resend interval, whether or not a mail went out
        lately (the time left would tell that an address has a pending account)."""
        return self.settings.resend_interval_seconds

    # Login, tokens, logout

    async def login(self, email: str, password: str, *, client_ip: str) -> TokenPair:
        await self._admit_password_check(email, client_ip)
        user = await self.repository.get_user_by_email(email)
        # Verified against a dummy hash for unknown emails: equal timing, no enumeration.
        valid = await self.passwords.verify(password, user.password_hash if user else None)
        if user is None or not valid:
            await self.throttle.count_failure(email, client_ip,
                                              user_id=user.id if user else None)
            raise InvalidCredentials()
        await self.throttle.clear(email, client_ip)
        if not user.email_verified:
            raise EmailNotVerified("Verify your email address before signing in.")
        # The password was checked against the hash read before hashing began; a change may
        # have committed since (and revoked every session it found, not this one, which does
        # not exist yet). Under a lock the change must wait for, the hash must still be the one
        # checked: then a change after this point sees this session and revokes it.
        if await self.repository.current_password_hash(user.id) != user.password_hash:
            raise InvalidCredentials()
        session_id = secrets.token_hex(16)
        started_at = utcnow()
        await self.repository.create_session(session_id=session_id, user_id=user.id,
                                             created_at=started_at)
        return await self._issue_tokens(user_id=user.id, session_id=session_id,
                                        session_started_at=started_at)

    async def refresh(self, refresh_token: str) -> TokenPair:
        found = await self.repository.get_refresh_token_for_update(
            hash_refresh_token(refresh_token)
        )
        if found is None:
            raise InvalidToken("Unknown refresh token.")
        token, login_session = found
        if login_session.revoked_at is not None:
            raise TokenRevoked()
        if token.used_at is not None:
            # A rotated token came back: it was copied. Which copy is the thief's is
            # unknowable, so the whole family goes, the legitimate holder's included. The
            # request fails, so the revocation commits on its own, after this transaction
            # let go of the session row it locked.
            session_id = login_session.id
            await self.session.rollback()
            revoked = await in_own_transaction(
                self.session, lambda own: AuthRepository(own).revoke_session(session_id))
            if revoked:
                await self._publish_revoked([session_id])
            logger.warning("refresh token reuse; session revoked", extra={"session_id": session_id})
            raise TokenRevoked("This refresh token was already used; the session is revoked.")
        if token.expires_at <= utcnow():
            raise TokenExpired()
        if login_session.created_at + self._session_lifetime <= utcnow():
            # However often it was refreshed: a stolen refresh token is not good for ever.
            raise TokenExpired("The session has reached its maximum age; sign in again.")
        await self.repository.mark_refresh_token_used(token)
        return await self._issue_tokens(user_id=login_session.user_id, session_id=login_session.id,
                                        session_started_at=login_session.created_at)

    async def logout(self, user_id: int, session_id: str) -> None:
        # The sid is the caller's own, vouched for by the gateway; the user_id guard keeps a
        # forged header from revoking someone else's session.
        await self._revoke_session(session_id, user_id=user_id)

    async def change_password(
        self, user_id: int, session_id: str, *, current_password: str, new_password: str,
        client_ip: str,
    ) -> None:
        # Locked, so a concurrent change with the same old password waits and then fails
        # against the new hash instead of silently overwriting it.
        user = await self.repository.get_user(user_id, for_update=True)
        if user is None:
            raise UserNotFound()
        # The login throttle: with a token in hand, this route must not be a faster way to
        # guess the password than the login is.
        await self._admit_password_check(user.email, client_ip)
        if not await self.passwords.verify(current_password, user.password_hash):
            await self.throttle.count_failure(user.email, client_ip, user_id=user.id)
            raise WrongCurrentPassword()
        await self.throttle.clear(user.email, client_ip)
        await self.repository.set_password_hash(user, await self.passwords.hash(new_password))
        others = await self.repository.revoke_other_sessions(
            user_id=user_id, keep_session_id=session_id
        )
        await self._publish_revoked(others)

    async def _admit_password_check(self, email: str, client_ip: str) -> None:
        """Refused before any hashing: a refused guess costs no Argon2 work."""
        admission = await self.throttle.admit(email, client_ip)
        if not admission.allowed:
            raise TooManyAttempts("Too many failed sign-in attempts from this address.",
                                  retry_after=admission.retry_after)

    async def _revoke_session(self, session_id: str, *, user_id: int | None = None) -> None:
        if not await self.repository.revoke_session(session_id, user_id=user_id):
            return  # Not this user's, or revoked before (and published then).
        await self._publish_revoked([session_id])

    async def _publish_revoked(self, session_ids: list[str]) -> None:
        await publish_revoked_sessions(
            self.redis, session_ids,
            access_token_ttl_seconds=self.settings.access_token_ttl_seconds,
        )

    @property
    def _session_lifetime(self) -> timedelta:
        return timedelta(seconds=self.settings.session_max_lifetime_seconds)

    async def _issue_tokens(self, *, user_id: int, session_id: str,
                            session_started_at: datetime) -> TokenPair:
        refresh_token = secrets.token_urlsafe(32)
        # Never past the session's end, so no refresh can stretch it.
        expires_at = min(utcnow() + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
                         session_started_at + self._session_lifetime)
        await self.repository.add_refresh_token(
            session_id=session_id,
            token_hash=hash_refresh_token(refresh_token),
            expires_at=expires_at,
        )
        roles = await RolesRepository(session=self.session).roles_of(user_id)
        return TokenPair(
            access_token=self.signer.issue_access_token(user_id=user_id, session_id=session_id,
                                                        roles=roles),
            refresh_token=refresh_token,
            expires_in=self.settings.access_token_ttl_seconds,
        )
