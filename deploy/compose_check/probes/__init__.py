"""Small programs the check runs inside the containers (`python - ARGS`, source on stdin), where
the compose network's names resolve and nothing has to be published. Standard library, plus
what the app image has."""
