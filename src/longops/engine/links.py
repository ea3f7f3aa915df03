"""The links a generated file is known by: an identifier in Google's form, and the address
that serves its bytes.

Google's SDKs read a file's id out of a `uri` only when it starts with `https://` (the
Python one in `files.download(file=video)`, the JavaScript one in `files.download({file})`)
and then download through their own base URL; Google's links always are https. So every
`uri` longops gives (a File's, a generated video's) is https, on the public URL's host and
path, whatever the public URL's scheme: behind an https public URL it is also a working
link, on a plain-http server only an identifier. `downloadUri` is the real address, the
public URL as configured, so a person (or curl) can always fetch it.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def _https(public_url: str) -> str:
    """The public URL's host and path under https, without a trailing slash."""
    parts = urlsplit(public_url)
    return f"https://{parts.netloc}{parts.path.rstrip('/')}"


def file_uri(public_url: str, id: str, version: str = "v1beta") -> str:
    """A File's `uri`: `https://HOST/v1beta/files/{id}`, as Google's are."""
    return f"{_https(public_url)}/{version}/files/{id}"


def video_uri(public_url: str, id: str, version: str = "v1beta") -> str:
    """A generated video's `uri`: its file's download address in https form."""
    return f"{file_uri(public_url, id, version)}:download?alt=media"


def download_uri(public_url: str, id: str, version: str = "v1beta") -> str:
    """A File's `downloadUri`: where its bytes are served, under the public URL as given."""
    return f"{public_url.rstrip('/')}/{version}/files/{id}:download?alt=media"
