"""The one exception type a user sees as a single line (no traceback)."""


class ChatbotError(Exception):
    """A problem with the user's input, files or environment; `chatbot` prints it as one line."""
