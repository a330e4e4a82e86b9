"""A doctor logging in to or out of PACS, as the local API takes it (a viewer plugin's launch)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from agent.inputs import Body

Code = Annotated[str, Field(min_length=1, max_length=64)]


class DoctorLogin(Body):
    """Who logs in to (or out of) PACS; a platform maps it to its launch parameters."""

    user_id: Code  # the PACS account (unique)
    action: Literal["login", "logout"]
    name: Code
    department: Code
    department_code: Code
    sex: Literal["male", "female", "other", "unknown"]
    role: Literal["physician", "technician", "nurse"]
    insurance_code: Code  # the person's national insurance code (医师/医技人员/护士代码)
    id_card_no: Annotated[str, Field(pattern=r"^[0-9]{17}[0-9Xx]$|^[A-Za-z0-9]{6,32}$")]
    phone: Annotated[str, Field(max_length=32)] | None = None
