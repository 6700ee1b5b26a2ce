"""The auth flow through the gateway with every app on the Redis Cluster: sign-up limits, login
throttles, revocation (logout, refresh reuse, password change, and the cluster losing its data)."""

from __future__ import annotations

from gateway.tests.test_e2e import (
    test_a_logged_out_token_stays_refused_when_redis_loses_its_data,
    test_a_strangers_failed_logins_never_lock_the_owner_out,
    test_full_account_flow,
    test_login_failures_are_throttled_per_email,
    test_password_change_revokes_other_sessions,
    test_refresh_token_reuse_revokes_the_session,
    test_sign_up_resend_and_verification_are_limited_per_client_address,
)

__all__ = [
    "test_a_logged_out_token_stays_refused_when_redis_loses_its_data",
    "test_a_strangers_failed_logins_never_lock_the_owner_out",
    "test_full_account_flow",
    "test_login_failures_are_throttled_per_email",
    "test_password_change_revokes_other_sessions",
    "test_refresh_token_reuse_revokes_the_session",
    "test_sign_up_resend_and_verification_are_limited_per_client_address",
]
