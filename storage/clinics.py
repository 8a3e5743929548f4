"""Clinics as rows: the clinic files in config/clinics are the source, the table mirrors them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from storage.models import Clinic


def upsert_clinic(session: Session, id: str, name: str) -> Clinic:
    """Create the clinic or update its name, so start-up can sync from the clinic files.

    Flushes but does not commit: the caller owns the transaction.
    """
    if not id or not id.strip():
        raise ValueError("clinic id must not be empty (check the clinic file's `id`)")
    clinic = session.get(Clinic, id)
    if clinic is None:
        clinic = Clinic(id=id, name=name)
        session.add(clinic)
    elif clinic.name != name:
        clinic.name = name
    session.flush()
    return clinic
