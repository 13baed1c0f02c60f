// Swagger UI over the OpenAPI document of the gateway serving this page. The document's
// server is "/", so "Try it out" calls this same origin (no CORS involved).
"use strict";

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  validatorUrl: null, // the default badge calls an outside service
  defaultModelsExpandDepth: 0,
});
