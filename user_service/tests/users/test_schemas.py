"""What a user's name may be, as the published schema says it and as the API enforces it."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from user_service.users.schemas import ProfileUpdate


@pytest.mark.parametrize("name", [" ", "\t\n ", "\u3000",
                                   # where the regex engines' \s differ
                                   "\x1c", "\x85", "\ufeff", " \x1f\ufeff "])
def test_a_name_of_white_space_alone_is_refused_and_the_schema_says_so(name: str) -> None:
    pattern = ProfileUpdate.model_json_schema()["properties"]["name"]["pattern"]
    assert re.search(pattern, name) is None
    with pytest.raises(ValidationError):
        ProfileUpdate(name=name)
    assert re.search(pattern, " Ada ") is not None
    assert ProfileUpdate(name=" Ada ").name is not None
