"""HTTP routes of posts and post likes; the caller is the gateway's X-User-Id."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from shared.errors import Unauthorized, ValidationFailed, problem_responses
from shared.identity import CurrentUser
from shared.schemas import Page
from social_service.dependencies import PostsReaderDep, PostsServiceDep
from social_service.params import DEFAULT_LIMIT, Cursor, Limit, PathId, QueryId
from social_service.posts.errors import NotPostAuthor, PostNotFound
from social_service.posts.schemas import ContentIn, PostOut

router = APIRouter(prefix="/api/v1/posts", tags=["posts"])


@router.post("", status_code=status.HTTP_201_CREATED,
             responses=problem_responses(Unauthorized, ValidationFailed),
             description="Content is 1..5000 characters and not only white space.")
async def create_post(body: ContentIn, user_id: CurrentUser, posts: PostsServiceDep) -> PostOut:
    return await posts.create(user_id, body.content)


@router.get("", responses=problem_responses(Unauthorized, ValidationFailed),
            description=("Newest first; `author_id` narrows the list to one author (an id with no "
                         "posts, or no account, gives an empty list)."))
async def list_posts(
    _: CurrentUser, posts: PostsReaderDep, author_id: QueryId = None,
    limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
) -> Page[PostOut]:
    return await posts.list(author_id=author_id, cursor=cursor, limit=limit)


@router.get("/{post_id}", responses=problem_responses(Unauthorized, PostNotFound, ValidationFailed))
async def get_post(post_id: PathId, _: CurrentUser, posts: PostsReaderDep) -> PostOut:
    return await posts.get(post_id)


@router.patch("/{post_id}",
              responses=problem_responses(Unauthorized, NotPostAuthor, PostNotFound, ValidationFailed))
async def edit_post(post_id: PathId, body: ContentIn, user_id: CurrentUser,
                    posts: PostsServiceDep) -> PostOut:
    return await posts.edit(user_id, post_id, body.content)


@router.delete("/{post_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses=problem_responses(Unauthorized, NotPostAuthor, PostNotFound, ValidationFailed),
               description="Its comments, likes and activities go with it, and it leaves every feed.")
async def delete_post(post_id: PathId, user_id: CurrentUser, posts: PostsServiceDep) -> Response:
    await posts.delete(user_id, post_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/{post_id}/like", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
            responses=problem_responses(Unauthorized, PostNotFound, ValidationFailed),
            description="Idempotent: liking again changes nothing.")
async def like_post(post_id: PathId, user_id: CurrentUser, posts: PostsServiceDep) -> Response:
    await posts.like(user_id, post_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/{post_id}/like", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses=problem_responses(Unauthorized, PostNotFound, ValidationFailed),
               description="Idempotent: unliking what was never liked changes nothing.")
async def unlike_post(post_id: PathId, user_id: CurrentUser, posts: PostsServiceDep) -> Response:
    await posts.unlike(user_id, post_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
