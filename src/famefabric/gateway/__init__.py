"""The HTTP gateway: the OpenAI Responses and Conversations APIs over the fabric, and the web chat page.

``fame gateway`` runs :func:`~famefabric.gateway.server.run_gateway`; the app
itself is :func:`~famefabric.gateway.app.create_app`. See docs/GATEWAY.md.
"""

from famefabric.gateway.app import create_app
from famefabric.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]
