"""social_service: posts, comments, likes, follows, feed and activities (domain arrives in a later issue)."""
