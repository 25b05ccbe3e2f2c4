#!/bin/sh
# Runtime: serve the rendered documents in the foreground on $PORT.
exec httpd -f -p "${PORT:-8000}" -h /app/www
