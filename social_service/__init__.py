"""social_service: posts, comments, likes, follows, the newsfeed (fan-out on write to Redis
timelines) and activities."""
