"""user_service has the frame every service has: health, readiness, metrics, problem+json."""

from __future__ import annotations

from shared.testing.service_frame import ServiceFrameTests


class TestUserServiceFrame(ServiceFrameTests):
    package = "user_service"
    schema = "preorder_user"
