"""Images: disk and ISO images in a hypervisor's storage pool (issue 16, item 2).

Contract stand-in: branch `images` owns this module (upload, list, delete); create needs only
`find`."""

from sqlalchemy import select

from enomalism.errors import NotFound
from enomalism.services import access
from enomalism.services.context import Context
from enomalism.store.models import Image


def find(ctx: Context, *, ref: str, permission: str = "read") -> Image:
    """The image a UUID or a name names, which the caller holds `permission` on; 404 when
    there is none the caller may read."""
    image = ctx.db.get(Image, ref) or next(
        (i for i in ctx.db.scalars(select(Image).where(Image.name == ref))
         if access.holds(ctx, i, "read")), None)
    if image is None or not access.holds(ctx, image, "read"):
        raise NotFound(f"no image with UUID or name '{ref}'")
    access.require(ctx, image, permission, "image")
    return image
