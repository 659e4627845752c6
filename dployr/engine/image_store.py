"""The container images of an instance's services in podman's store: what a delete with
``--purge-image`` and ``dployr images prune`` remove (images no kept release runs)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from dployr.engine import podman
from dployr.protocol.messages import ImagesPruned

if TYPE_CHECKING:
    from dployr.engine.instance import Instance


def recorded(instance: Instance, name: str) -> set[str]:
    """The images the deployments of service ``name`` recorded."""
    return {d.image for d in instance.store.deployments(name, 1000) if d.image is not None}


def kept(instance: Instance) -> set[str]:
    """The images a kept release of a service runs: by the rule that keeps release folders,
    not by the folders there now (a deploy that just ended may not have pruned yet)."""
    images = set()
    for name, service in instance.services.items():
        folders = service.kept_releases()
        for deployment in instance.store.deployments(name, 1000):
            if deployment.image is not None and deployment.folder in folders:
                images.add(deployment.image)
    return images


async def remove_unused(instance: Instance, images: set[str]) -> tuple[str, ...]:
    """Remove ``images`` from podman's store, but for those a kept release runs."""
    unused = images - kept(instance)
    if not unused or shutil.which(podman.PODMAN) is None:
        return ()
    return tuple(await podman.remove_images(sorted(unused)))


async def prune(instance: Instance) -> ImagesPruned:
    """``dployr images prune``: remove the images no kept release runs."""
    every = set()
    for name in instance.services:
        every |= recorded(instance, name)
    return ImagesPruned(await remove_unused(instance, every))
