"""social_service answers health, readiness and metrics against its real, migrated schema."""

from __future__ import annotations

from shared.testing.service_frame import ServiceFrameTests


class TestSocialServiceFrame(ServiceFrameTests):
    package = "social_service"
    schema = "preorder_social"
