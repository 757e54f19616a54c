"""Feedback records, readers and collators (imports no torch)."""

from rlhfkit.data.records import (  # noqa: F401
    BinaryFeedback,
    Conversation,
    DataError,
    LanguageFeedback,
    Message,
    PreferencePair,
    Ranking,
    Record,
    ScoreFeedback,
    SFTExample,
    StepFeedback,
    as_conversation,
    pair_to_binary,
    ranking_to_pairs,
    record_to_json,
    split_steps,
)
from rlhfkit.data.readers import ReadResult, read_many, read_records, write_records  # noqa: F401,E402
