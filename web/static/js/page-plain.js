// A page with nothing live on it but the connection indicator.
import { startLive } from "./live.js";

startLive();
