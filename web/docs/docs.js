// Starts Swagger UI on /docs. Kept out of index.html so the page needs no inline script.
'use strict';

window.addEventListener('DOMContentLoaded', function () {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    // BaseLayout: no top bar that would let the page load some other document.
    layout: 'BaseLayout',
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    // The API key pasted once in "Authorize" survives reloads (kept in localStorage).
    persistAuthorization: true,
    displayRequestDuration: true,
    filter: true,
    // The default sends the document to validator.swagger.io; the device may be offline
    // and the document is linted at build time instead.
    validatorUrl: null,
  });
});
