"""The prediction server: Vertex AI's request and response shapes over the exported model.

Modules, in the order a request meets them:

  protocol  the request body -> drawings and top_k, checked; probabilities -> predictions
  batching  concurrent requests' drawings gathered into one model call, off the event loop
  app       build_app(classifier, settings) -> the Starlette app: routes, errors, the page
  static/   the page to draw on: index.html, page.css, page.js (no build step)

`python -m trainer.serve` (trainer/serve.py) reads the flags, loads the model and runs the app
on uvicorn.
"""
