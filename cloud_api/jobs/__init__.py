"""Print jobs: a durable lifecycle from submission to paper, with a timeline of every step."""

from ._controller import JobsController
from ._models import JobView, SubmitJob
from ._service import JobService

__all__ = ["JobService", "JobView", "JobsController", "SubmitJob"]
