import pytest

from illume_plus.apps.intent import ANSWER, EDIT, GENERATE, classify


@pytest.mark.parametrize("message, has_image, task, text", [
    ("draw an image of a red circle", False, GENERATE, "a red circle"),
    ("Please generate a picture of two cats.", True, GENERATE, "two cats"),
    ("show me a photo of a lighthouse at dusk", False, GENERATE, "a lighthouse at dusk"),
    ("an image of a blue square", False, GENERATE, "a blue square"),
    ("make it blue", True, EDIT, "make it blue"),
    ("Now turn the sky red", True, EDIT, "Now turn the sky red"),
    ("make it blue", False, ANSWER, "make it blue"),  # nothing to edit yet
    ("can you make it bigger?", True, ANSWER, "can you make it bigger?"),  # a question
    ("What is in this picture?", True, ANSWER, "What is in this picture?"),
    ("/generate a cat", True, GENERATE, "a cat"),
    ("/edit add a hat", True, EDIT, "add a hat"),
    ("/ask make it blue", True, ANSWER, "make it blue"),
])
def test_messages_map_to_tasks(message, has_image, task, text):
    intent = classify(message, has_image)
    assert (intent.task, intent.text) == (task, text)


def test_empty_messages_and_bare_commands_are_refused():
    with pytest.raises(ValueError, match="empty"):
        classify("   ", True)
    with pytest.raises(ValueError, match="/edit needs"):
        classify("/edit", True)
