// Where the worker's credential and trust root come from. The credential is read from the
// environment or a file, never from argv: process arguments are visible to every local user (ps).
import fs from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { ConfigError } from "./_errors.js";

/**
 * The credential: `credential` if given, else $TIDEMESH_API_KEY, else the file `credentialFile`
 * or $TIDEMESH_API_KEY_FILE (surrounding whitespace dropped). Empty string: none (a mesh with auth off).
 */
export function loadCredential({ credential, credentialFile, env = process.env } = {}) {
  if (credential) return credential.trim();
  if (env.TIDEMESH_API_KEY) return env.TIDEMESH_API_KEY.trim();
  const path = credentialFile || env.TIDEMESH_API_KEY_FILE;
  if (!path) return "";
  try {
    return fs.readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new ConfigError(`cannot read the credential file ${path}: ${err.message}`, { cause: err });
  }
}

/** `ApiKey tmk_…` for an API key, `Bearer …` for anything else (a JWT) — as services/gateway/_auth.py reads them. */
export function authorizationValue(credential) {
  return credential.startsWith("tmk_") ? `ApiKey ${credential}` : `Bearer ${credential}`;
}

/**
 * Channel credentials: TLS verified against the PEM root `ca` (or $TIDEMESH_CA), else the system's
 * roots; plaintext only when `insecure` is asked for explicitly (local tests).
 */
export function channelCredentials({ ca, insecure = false, env = process.env } = {}) {
  if (insecure) return grpc.credentials.createInsecure();
  const path = ca || env.TIDEMESH_CA;
  if (!path) return grpc.credentials.createSsl();
  try {
    return grpc.credentials.createSsl(fs.readFileSync(path));
  } catch (err) {
    throw new ConfigError(`cannot read the CA file ${path}: ${err.message}`, { cause: err });
  }
}
