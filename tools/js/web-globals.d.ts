// Globals the pages set for the end-to-end tests and debugging (window.app = {client, view, me}).
interface Window {
  app?: Record<string, unknown>;
  // Apache ECharts, loaded by report.html from web_client/vendor/echarts/ (a UMD build).
  echarts?: any;
}
