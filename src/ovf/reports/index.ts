export { formatJson, JSON_REPORT_VERSION, type JsonReport, toJsonReport } from "./json.js";
export { formatJunit } from "./junit.js";
export { formatSarif, SARIF_SCHEMA_URI } from "./sarif.js";
export { formatText } from "./text.js";
