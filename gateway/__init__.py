"""sax-gateway: gRPC and HTTP/JSON access to Saxml cells."""
