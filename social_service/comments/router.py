"""HTTP routes of comments and comment likes: created and listed under their post, changed under
/comments/{id}."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from shared.errors import Unauthorized, ValidationFailed, problem_responses
from shared.identity import CurrentUser
from shared.schemas import Page
from social_service.comments.errors import CommentNotFound, NotCommentAuthor
from social_service.comments.schemas import CommentOut
from social_service.dependencies import CommentsReaderDep, CommentsServiceDep
from social_service.params import DEFAULT_LIMIT, Cursor, Limit, PathId
from social_service.posts.errors import PostNotFound
from social_service.posts.schemas import ContentIn

router = APIRouter(prefix="/api/v1", tags=["comments"])


@router.post("/posts/{post_id}/comments", status_code=status.HTTP_201_CREATED,
             responses=problem_responses(Unauthorized, PostNotFound, ValidationFailed),
             description="Content is 1..5000 characters and not only white space.")
async def create_comment(post_id: PathId, body: ContentIn, user_id: CurrentUser,
                         comments: CommentsServiceDep) -> CommentOut:
    return await comments.create(user_id, post_id, body.content)


@router.get("/posts/{post_id}/comments",
            responses=problem_responses(Unauthorized, PostNotFound, ValidationFailed),
            description="Oldest first.")
async def list_comments(post_id: PathId, _: CurrentUser, comments: CommentsReaderDep,
                        limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Page[CommentOut]:
    return await comments.list(post_id, cursor=cursor, limit=limit)


@router.get("/comments/{comment_id}",
            responses=problem_responses(Unauthorized, CommentNotFound, ValidationFailed),
            description="One comment, e.g. the target of a comment_created or comment_liked activity.")
async def get_comment(comment_id: PathId, _: CurrentUser, comments: CommentsReaderDep) -> CommentOut:
    return await comments.get(comment_id)


@router.patch("/comments/{comment_id}", responses=problem_responses(
    Unauthorized, NotCommentAuthor, CommentNotFound, ValidationFailed))
async def edit_comment(comment_id: PathId, body: ContentIn, user_id: CurrentUser,
                       comments: CommentsServiceDep) -> CommentOut:
    return await comments.edit(user_id, comment_id, body.content)


@router.delete("/comments/{comment_id}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response, responses=problem_responses(
                   Unauthorized, NotCommentAuthor, CommentNotFound, ValidationFailed),
               description="Its likes and activities go with it.")
async def delete_comment(comment_id: PathId, user_id: CurrentUser,
                         comments: CommentsServiceDep) -> Response:
    await comments.delete(user_id, comment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/comments/{comment_id}/like", status_code=status.HTTP_204_NO_CONTENT,
            response_class=Response,
            responses=problem_responses(Unauthorized, CommentNotFound, ValidationFailed),
            description="Idempotent: liking again changes nothing.")
async def like_comment(comment_id: PathId, user_id: CurrentUser,
                       comments: CommentsServiceDep) -> Response:
    await comments.like(user_id, comment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/comments/{comment_id}/like", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response,
               responses=problem_responses(Unauthorized, CommentNotFound, ValidationFailed),
               description="Idempotent: unliking what was never liked changes nothing.")
async def unlike_comment(comment_id: PathId, user_id: CurrentUser,
                         comments: CommentsServiceDep) -> Response:
    await comments.unlike(user_id, comment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
