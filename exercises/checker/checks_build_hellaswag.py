"""The build track's hellaswag (spec: docs/build/hellaswag.md)."""


def check_hellaswag(ex) -> None:
    raise NotImplementedError("the check of hellaswag is being written")
