"""What a post's content may be, as the published schema says it and as the API enforces it."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from social_service.posts.schemas import ContentIn


@pytest.mark.parametrize("content", [" ", "\t\n ", "\u3000",
                                   # where the regex engines' \s differ
                                   "\x1c", "\x85", "\ufeff", " \x1f\ufeff "])
def test_content_of_white_space_alone_is_refused_and_the_schema_says_so(content: str) -> None:
    """A fuzzer reading the schema sent `{"content": " "}` as valid data and got 422: the
    schema now carries the rule the validator enforces."""
    pattern = ContentIn.model_json_schema()["properties"]["content"]["pattern"]
    assert re.search(pattern, content) is None
    with pytest.raises(ValidationError):
        ContentIn(content=content)
    assert re.search(pattern, " a ") is not None
    assert ContentIn(content=" a ").content == " a "
