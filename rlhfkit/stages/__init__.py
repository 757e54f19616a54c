"""One readable file per stage: a Config dataclass and ``run(config) -> result``."""
