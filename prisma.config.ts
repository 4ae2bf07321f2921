import { defineConfig } from 'prisma/config';

// Used by the prisma CLI only (generate; migrate deploy against an external DATABASE_URL).
// The service applies prisma/migrations itself at start (src/store/migrate.ts).
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://localhost/exoroute' },
});
