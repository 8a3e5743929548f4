"""Clinics as rows: the clinic files in config/clinics are the source, the table mirrors them.

What the sync writes and what it leaves alone (so that an admin's change in the UI survives a
restart): `file_name` always follows the file; `name` follows it unless an admin renamed the
clinic (`name_edited`); `active` is never touched (a new clinic starts active). A clinic whose
file is removed keeps its row, since its tickets and access log refer to it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from storage.models import Clinic


def upsert_clinic(session: Session, id: str, name: str) -> Clinic:
    """Create the clinic or update its name from its file, so start-up can sync from the clinic
    files (an admin's rename stays). Flushes but does not commit: the caller owns the
    transaction.
    """
    if not id or not id.strip():
        raise ValueError("clinic id must not be empty (check the clinic file's `id`)")
    clinic = session.get(Clinic, id)
    if clinic is None:
        clinic = Clinic(id=id, name=name, file_name=name, name_edited=False, active=True)
        session.add(clinic)
    else:
        if clinic.file_name != name:
            clinic.file_name = name
        if not clinic.name_edited and clinic.name != name:
            clinic.name = name
    session.flush()
    return clinic


def edit_clinic(session: Session, clinic: Clinic, display_name: str, active: bool) -> None:
    """An admin's change: `display_name` overrides the file's name ('' or the file's own name
    goes back to following the file); `active` as given. Flushes, does not commit."""
    display_name = display_name.strip()
    if len(display_name) > 200:
        raise ValueError("a clinic name may have at most 200 characters")
    if not display_name or display_name == clinic.file_name:
        clinic.name = clinic.file_name or clinic.name
        clinic.name_edited = False
    else:
        clinic.name = display_name
        clinic.name_edited = True
    clinic.active = active
    session.flush()
