"""Domain verbs for execution (work in progress)."""


def signal_execute(*, signal_id: int) -> None:
    raise NotImplementedError
