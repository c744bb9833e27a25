"""A small Python client for the enomalism API, on httpx."""

from typing import Any

import httpx


class ClientError(Exception):
    """An error answer, or no answer at all (errno 0, status 0)."""

    def __init__(self, status: int, errno: int, message: str) -> None:
        super().__init__(f"{errno}: {message}")
        self.status, self.errno, self.message = status, errno, message

    @property
    def exit_code(self) -> int:
        """Distinct exit codes for the CLI: not found, denied, conflict, unreachable."""
        return {404: 3, 401: 4, 403: 4, 409: 5, 423: 5, 0: 6}.get(self.status, 1)


class Client:
    def __init__(self, url: str, username: str, password: str, timeout: float = 60.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), auth=(username, password),
                                  timeout=timeout)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, **data: Any) -> dict:
        body = {k: v for k, v in data.items() if v is not None}
        try:
            r = self._http.request(method, path, json=body if method != "GET" else None,
                                   params=body if method == "GET" else None)
        except httpx.TransportError as e:
            raise ClientError(0, 0, f"cannot reach the server: {e}") from None
        try:
            answer = r.json()
        except ValueError:
            raise ClientError(r.status_code, 1, f"not a JSON answer (HTTP {r.status_code})") \
                from None
        if r.status_code >= 400 or answer.get("errno", 0):
            raise ClientError(r.status_code, answer.get("errno", 1), answer.get("message", ""))
        return answer

    def register_host(self, **variables: Any) -> dict:
        return self.call("PUT", "/rest/hosts/", **variables)

    def hosts(self) -> list[dict]:
        return self.call("GET", "/rest/hosts/")["hosts"]

    def add_hypervisor(self, host: str, virt_url: str, virt_class: str | None = None) -> dict:
        return self.call("POST", f"/rest/machine/{host}/hypervisors/", virt_url=virt_url,
                         virt_class=virt_class)
