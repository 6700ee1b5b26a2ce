"""`make compose-check`: the repository's own docker-compose.yml, brought up on a real engine and
checked from the outside, then taken down again.

    python -m deploy.compose_check

It starts a Docker engine if none answers (installing Debian's docker.io and docker-compose when
they are missing), builds stand-ins for the official images where no registry can be reached
(standins/), runs docker-compose.yml with an override file that changes only image names, and
checks the running system through the gateway's published port and `docker exec`. One line per
check; the exit status is non-zero if any failed. Built images are tagged with a hash of what
went into them, so a second run reuses them.
"""
