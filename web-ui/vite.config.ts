import { defineConfig } from "vite";

// The dashboard is served by `sluice serve` at `/`, its files under `/assets/`.
// `SLUICE_API` (e.g. http://127.0.0.1:8081) proxies the API in `npm run dev`.
const api = process.env.SLUICE_API ?? "http://127.0.0.1:8081";

export default defineConfig({
  base: "/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: process.env.SLUICE_WEB_UI_OUT ?? "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      "/v1": api,
      "/healthz": api,
      "/metrics": api,
    },
  },
});
