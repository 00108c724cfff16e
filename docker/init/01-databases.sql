-- Run by the postgres image on its first start only (an empty data volume), as POSTGRES_USER: the
-- databases of the three ai-micro services. Their schema comes from the migrations
-- (`npm run migration:run`), never from here.
CREATE DATABASE authdb;
CREATE DATABASE apidb;
CREATE DATABASE admindb;
