// The entities of apidb, in one list for its DataSource.
import { Profile } from "./Profile";

export { Profile };
export const entities = [Profile];
