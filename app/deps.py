"""FastAPI dependencies (``Annotated`` aliases): settings, the caller, the job service as the caller sees it.

Authentication itself happens before the app (:mod:`pdeforge.app.auth`); here the principal it
found is read back, and the job service is bound to it, so a router that calls
``service.get(job_id)`` sees only the caller's jobs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from pdeforge.workers.config import Settings
from pdeforge.workers.errors import JobNotFound
from pdeforge.workers.jobs import JobService
from pdeforge.workers.principals import ANONYMOUS, Principal
from pdeforge.workers.storage import Storage


def app_settings(request: Request) -> Settings:
    """The settings the app was built with (not re-read from the environment)."""
    return request.app.state.settings


def get_principal(request: Request) -> Principal:
    """The caller (set by :class:`~pdeforge.app.auth.AuthMiddleware`)."""
    return getattr(request.state, "principal", ANONYMOUS)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


class CallerService:
    """:class:`JobService` bound to one principal: every job operation acts as that caller."""

    def __init__(self, service: JobService, principal: Principal) -> None:
        self._service, self.principal = service, principal

    def __getattr__(self, name: str):
        return getattr(self._service, name)

    def submit(self, job):
        return self._service.submit(job, self.principal)

    def get(self, job_id: str) -> dict:
        return self._service.get(job_id, self.principal)

    def cancel(self, job_id: str) -> dict:
        return self._service.cancel(job_id, self.principal)

    def delete(self, dataset_id: str) -> None:
        self._service.delete(dataset_id, self.principal)

    def list_jobs(self, **kwargs):
        return self._service.list_jobs(self.principal, **kwargs)

    def submit_batch(self, jobs):
        return self._service.submit_batch(jobs, self.principal)

    def batch(self, batch_id: str) -> list[dict]:
        return self._service.batch(batch_id, self.principal)

    def estimate(self, job) -> dict:
        return self._service.estimate(job, self.principal)


def get_service(request: Request, principal: PrincipalDep) -> CallerService:
    return CallerService(request.app.state.service, principal)


def get_storage(request: Request) -> Storage:
    return request.app.state.service.storage


def require_dataset_access(dataset_id: str, request: Request, principal: PrincipalDep) -> None:
    """404 unless the caller holds a handle on the dataset's job (admins: every dataset)."""
    if not request.app.state.service.owns(dataset_id, principal):
        raise JobNotFound(f"no dataset {dataset_id!r}", job_id=dataset_id)


SettingsDep = Annotated[Settings, Depends(app_settings)]
ServiceDep = Annotated[CallerService, Depends(get_service)]
StorageDep = Annotated[Storage, Depends(get_storage)]
