// Globals the pages set for the end-to-end tests and debugging (window.app = {client, view, me}).
interface Window {
  app?: Record<string, unknown>;
}
