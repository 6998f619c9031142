// Starts the UI. A file of its own, not an inline script: the page's Content-Security-Policy
// allows scripts from this origin only.
import init from './ui.js';
init();
