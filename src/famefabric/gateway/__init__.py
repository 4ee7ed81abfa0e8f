"""The HTTP gateway: the OpenAI Responses and Conversations APIs over the fabric, and the web chat page."""
